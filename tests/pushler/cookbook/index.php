<?php
// The vanilla page of the order-tracking cookbook: the markup its OrderTracker class updates, the
// client loaded from the broker (/pushler.js, so PushlerClient connects back to it by default), the
// cookbook's class unchanged, and its two "usage" lines with this app's key.
$broker = 'http://' . getenv('VESTNIK_HOST') . ':' . getenv('VESTNIK_PORT');
$key = getenv('PUSHLER_APP_KEY');
?><!doctype html>
<html lang="ru">
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Заказ #12345</title></head>
<body>
  <div class="current-status"><span id="status-icon">🕐</span> <span id="current-status">Ожидает подтверждения</span></div>
  <div id="status-comment"></div>
  <ol class="timeline">
    <li id="step-pending" class="active">Оформлен</li>
    <li id="step-confirmed" class="pending">Подтверждён</li>
    <li id="step-preparing" class="pending">Готовится</li>
    <li id="step-ready" class="pending">Готов</li>
    <li id="step-shipped" class="pending">В пути</li>
    <li id="step-delivered" class="pending">Доставлен</li>
  </ol>
  <div id="toasts"></div>
  <script src="<?= htmlspecialchars($broker) ?>/pushler.js"></script>
  <script src="/order-tracker.js"></script>
  <script>
    // Использование
    const tracker = new OrderTracker(12345, 67890, <?= json_encode($key) ?>);
    tracker.connect();
  </script>
</body>
</html>
