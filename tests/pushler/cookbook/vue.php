<?php
// The Vue 3 page of the cookbook: Vue from npm (served locally), the cookbook's OrderTracker.vue
// compiled by the test, and '@vestnik/pushler' resolved by an import map to clients/js.
$vestnik = ['host' => getenv('VESTNIK_HOST'), 'port' => (int) getenv('VESTNIK_PORT')];
$props = ['orderId' => 12345, 'userId' => 67890, 'initialStatus' => 'pending', 'appKey' => getenv('PUSHLER_APP_KEY')];
?><!doctype html>
<html lang="ru">
<head>
  <meta charset="utf-8"><link rel="icon" href="data:,"><title>Заказ #12345 (Vue)</title>
  <script type="importmap">
    {"imports": {"vue": "/vue.esm-browser.prod.js", "@vestnik/pushler": "/pushler/index.js", "@vestnik/pushler/vue": "/pushler/vue.js"}}
  </script>
</head>
<body>
  <div id="app"></div>
  <script>window.VESTNIK = <?= json_encode($vestnik) ?>;</script>
  <script type="module">
    import { createApp } from 'vue';
    import OrderTracker from '/OrderTracker.js';
    createApp(OrderTracker, <?= json_encode($props) ?>).mount('#app');
    window.appMounted = true;
  </script>
</body>
</html>
