<?php
// auth.php

require_once 'vendor/autoload.php';

use PushlerRu\PushlerClient;

// Vestnik: the constructor options point the client at the broker (the only change to this file).
$pushler = new PushlerClient(getenv('PUSHLER_APP_KEY'), getenv('PUSHLER_APP_SECRET'), [
    'host' => getenv('VESTNIK_HOST'),
    'port' => (int) getenv('VESTNIK_PORT'),
    'scheme' => 'http',
]);

header('Content-Type: application/json');

$channelName = $_POST['channel_name'];
$socketId = $_POST['socket_id'];
$userId = getCurrentUserId();

if (!$userId) {
    http_response_code(401);
    echo json_encode(['error' => 'Unauthorized']);
    exit;
}

// Проверяем private-user-{userId}
if (preg_match('/^private-user-(\d+)$/', $channelName, $matches)) {
    if ((int) $matches[1] !== $userId) {
        http_response_code(403);
        echo json_encode(['error' => 'Forbidden']);
        exit;
    }
}

$auth = $pushler->authorizeChannel($channelName, $socketId);
echo json_encode($auth);
