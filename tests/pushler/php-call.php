<?php

// One PushlerClient call for tests/js/test/pushler-php.test.js: reads
// {"key", "secret", "options", "method", "args"} from $PHP_CALL, calls the method, and prints
// {"result": …} or {"exception": class, "status": …, "error": …, "message": …} as JSON.

declare(strict_types=1);

spl_autoload_register(function (string $class): void {
    $prefix = 'PushlerRu\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        require __DIR__ . '/../../clients/php/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    }
});

$call = json_decode((string) getenv('PHP_CALL'), true, 512, JSON_THROW_ON_ERROR);
try {
    $client = new PushlerRu\PushlerClient($call['key'], $call['secret'], $call['options'] ?? []);
    $result = $client->{$call['method']}(...($call['args'] ?? []));
    echo json_encode(['result' => $result], JSON_UNESCAPED_UNICODE);
} catch (Throwable $e) {
    echo json_encode([
        'exception' => get_class($e),
        'status' => $e instanceof PushlerRu\ApiException ? $e->getStatus() : null,
        'error' => $e instanceof PushlerRu\ApiException ? $e->getError() : null,
        'message' => $e->getMessage(),
    ], JSON_UNESCAPED_UNICODE);
}
