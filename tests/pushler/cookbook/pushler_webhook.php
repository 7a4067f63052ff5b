<?php
// A webhook receiver for the PHP client's verifyWebhook (not part of the cookbook): verifies the
// request, appends {"valid": true, …body} or {"valid": false, "error": …} as one JSON line to
// $WEBHOOK_LOG, and answers 200 or 401.

require_once 'vendor/autoload.php';

use PushlerRu\PushlerClient;
use PushlerRu\WebhookException;

$pushler = new PushlerClient(getenv('PUSHLER_APP_KEY'), getenv('PUSHLER_APP_SECRET'));

header('Content-Type: application/json');
try {
    $hook = $pushler->verifyWebhook(getallheaders(), file_get_contents('php://input'));
    $entry = ['valid' => true] + $hook;
    echo json_encode(['ok' => true]);
} catch (WebhookException $e) {
    http_response_code(401);
    $entry = ['valid' => false, 'error' => $e->getMessage()];
    echo json_encode(['error' => $e->getMessage()]);
}
file_put_contents(getenv('WEBHOOK_LOG'), json_encode($entry) . "\n", FILE_APPEND | LOCK_EX);
