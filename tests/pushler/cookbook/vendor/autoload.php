<?php

// Stands in for Composer's vendor/autoload.php so that the cookbook's `require_once
// 'vendor/autoload.php'` stays as written: a PSR-4 autoloader for PushlerRu\ from clients/php/src
// (what `composer require` of that package would set up), plus the cookbook's app functions
// (database and session) from cookbook-stubs.php.

spl_autoload_register(function (string $class): void {
    $prefix = 'PushlerRu\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        require __DIR__ . '/../../../../clients/php/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    }
});

require_once __DIR__ . '/cookbook-stubs.php';
