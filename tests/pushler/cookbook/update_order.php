<?php
// update_order.php — обновление статуса заказа

require_once 'vendor/autoload.php';

use PushlerRu\PushlerClient;

// Vestnik: the constructor options point the client at the broker (the only change to this file).
$pushler = new PushlerClient(getenv('PUSHLER_APP_KEY'), getenv('PUSHLER_APP_SECRET'), [
    'host' => getenv('VESTNIK_HOST'),
    'port' => (int) getenv('VESTNIK_PORT'),
    'scheme' => 'http',
]);

// Статусы заказа
$statuses = [
    'pending'    => ['text' => 'Ожидает подтверждения', 'icon' => '🕐', 'step' => 0],
    'confirmed'  => ['text' => 'Подтверждён', 'icon' => '✅', 'step' => 1],
    'preparing'  => ['text' => 'Готовится', 'icon' => '👨🍳', 'step' => 2],
    'ready'      => ['text' => 'Готов к выдаче', 'icon' => '📦', 'step' => 3],
    'shipped'    => ['text' => 'В доставке', 'icon' => '🚗', 'step' => 4],
    'delivered'  => ['text' => 'Доставлен', 'icon' => '🎉', 'step' => 5],
    'cancelled'  => ['text' => 'Отменён', 'icon' => '❌', 'step' => -1],
];

// Получаем данные
$orderId = (int) $_POST['order_id'];
$newStatus = $_POST['status'];
$comment = $_POST['comment'] ?? null;

// Валидация
if (!isset($statuses[$newStatus])) {
    http_response_code(400);
    echo json_encode(['error' => 'Invalid status']);
    exit;
}

// Обновляем в БД
$pdo = getDbConnection();
$stmt = $pdo->prepare('
    UPDATE orders 
    SET status = ?, updated_at = NOW() 
    WHERE id = ?
');
$stmt->execute([$newStatus, $orderId]);

// Получаем заказ
$stmt = $pdo->prepare('SELECT * FROM orders WHERE id = ?');
$stmt->execute([$orderId]);
$order = $stmt->fetch(PDO::FETCH_ASSOC);

$statusInfo = $statuses[$newStatus];

// Отправляем событие клиенту
$pushler->trigger(
    "private-user-{$order['user_id']}",
    'order:status',
    [
        'order_id' => $orderId,
        'status' => $newStatus,
        'status_text' => $statusInfo['text'],
        'status_icon' => $statusInfo['icon'],
        'step' => $statusInfo['step'],
        'comment' => $comment,
        'updated_at' => date('c')
    ]
);

// Логируем историю
$stmt = $pdo->prepare('
    INSERT INTO order_history (order_id, status, comment, created_at) 
    VALUES (?, ?, ?, NOW())
');
$stmt->execute([$orderId, $newStatus, $comment]);

echo json_encode(['success' => true]);
