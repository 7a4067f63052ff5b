<?php

// Router for `php -S` in the cookbook tests: serves the npm `vue` browser build, the JS client from
// clients/js under /pushler/, and the compiled Vue component ($COOKBOOK_COMPILED_VUE) at
// /OrderTracker.js; everything else (the cookbook's PHP, the pages) is served from this directory as
// php -S does by default.

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$root = dirname(__DIR__, 3);
$files = [
    '/vue.esm-browser.prod.js' => $root . '/tests/js/node_modules/vue/dist/vue.esm-browser.prod.js',
    '/OrderTracker.js' => getenv('COOKBOOK_COMPILED_VUE') ?: '',
];
if (preg_match('#^/pushler/([a-z][a-z-]*\.js)$#', $path, $m)) {
    $files[$path] = $root . '/clients/js/' . $m[1];
}
if (isset($files[$path])) {
    if (!is_file($files[$path])) {
        http_response_code(404);
        echo "missing {$files[$path]}";
        return true;
    }
    header('Content-Type: application/javascript');
    readfile($files[$path]);
    return true;
}
return false;
