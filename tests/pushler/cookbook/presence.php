<?php
// "Who is watching this order": a presence channel through the Vue composable usePushlerChannel, with
// every raw `pushler:` presence event also logged in window.presenceLog for the test.
$props = ['host' => getenv('VESTNIK_HOST'), 'port' => (int) getenv('VESTNIK_PORT'), 'key' => getenv('PUSHLER_APP_KEY')];
?><!doctype html>
<html lang="ru">
<head>
  <meta charset="utf-8"><link rel="icon" href="data:,"><title>Кто смотрит заказ</title>
  <script type="importmap">
    {"imports": {"vue": "/vue.esm-browser.prod.js", "@vestnik/pushler": "/pushler/index.js", "@vestnik/pushler/vue": "/pushler/vue.js"}}
  </script>
</head>
<body>
  <div id="app">
    <p id="state">{{ state }}</p>
    <p id="count">{{ members.length }}</p>
    <ul id="members"><li v-for="m in members" :key="m.id">{{ m.info.name }}</li></ul>
  </div>
  <script type="module">
    import { createApp } from 'vue';
    import PushlerClient from '@vestnik/pushler';
    import { usePushlerChannel } from '@vestnik/pushler/vue';
    const cfg = <?= json_encode($props) ?>;
    window.presenceLog = [];
    const pushler = new PushlerClient({ appKey: cfg.key, wsHost: cfg.host, wsPort: cfg.port, forceTLS: false, authEndpoint: '/presence_auth.php' });
    const log = (name) => (data) => window.presenceLog.push({ name, data: JSON.parse(JSON.stringify(data)) });
    createApp({
      setup() {
        const { members, state, channel } = usePushlerChannel(pushler, 'presence-order-12345', {
          'pushler:subscription_succeeded': (m) => window.presenceLog.push({ name: 'pushler:subscription_succeeded', data: { count: m.count, me: m.me, list: m.list() } }),
          'pushler:member_added': log('pushler:member_added'),
          'pushler:member_removed': log('pushler:member_removed'),
          'pusher:member_added': log('pusher:member_added'),
          'pusher_internal:member_added': log('pusher_internal:member_added'),
        });
        window.presenceChannel = channel;
        return { members, state };
      },
    }).mount('#app');
  </script>
</body>
</html>
