<?php
// Presence authorization for the "who is watching this order" page (not in the cookbook, which only
// shows private channels): the logged-in user joins with their name as user_info.

require_once 'vendor/autoload.php';

use PushlerRu\PushlerClient;

$pushler = new PushlerClient(getenv('PUSHLER_APP_KEY'), getenv('PUSHLER_APP_SECRET'), [
    'host' => getenv('VESTNIK_HOST'),
    'port' => (int) getenv('VESTNIK_PORT'),
    'scheme' => 'http',
]);

header('Content-Type: application/json');

$userId = getCurrentUserId();
if (!$userId) {
    http_response_code(401);
    echo json_encode(['error' => 'Unauthorized']);
    exit;
}

echo json_encode($pushler->authorizePresenceChannel(
    $_POST['channel_name'],
    $_POST['socket_id'],
    $userId,
    ['name' => $_COOKIE['user_name'] ?? "user {$userId}"]
));
