<?php
// update_courier_location.php — обновление позиции курьера

require_once 'vendor/autoload.php';

use PushlerRu\PushlerClient;

// Vestnik: the constructor options point the client at the broker (the only change to this file).
$pushler = new PushlerClient(getenv('PUSHLER_APP_KEY'), getenv('PUSHLER_APP_SECRET'), [
    'host' => getenv('VESTNIK_HOST'),
    'port' => (int) getenv('VESTNIK_PORT'),
    'scheme' => 'http',
]);

$orderId = (int) $_POST['order_id'];
$lat = (float) $_POST['lat'];
$lng = (float) $_POST['lng'];
$courierId = getCurrentCourierId();

// Получаем заказ
$pdo = getDbConnection();
$stmt = $pdo->prepare('SELECT user_id FROM orders WHERE id = ? AND courier_id = ?');
$stmt->execute([$orderId, $courierId]);
$order = $stmt->fetch(PDO::FETCH_ASSOC);

if (!$order) {
    http_response_code(403);
    exit;
}

// Отправляем геолокацию клиенту
$pushler->trigger(
    "private-user-{$order['user_id']}",
    'order:courier-location',
    [
        'order_id' => $orderId,
        'lat' => $lat,
        'lng' => $lng,
        'updated_at' => date('c')
    ]
);

echo json_encode(['success' => true]);
