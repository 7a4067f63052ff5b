// "My orders": every order of the signed-in customer from /api/orders, newest first, each linking
// to its page, kept live by pusher-js on private-user-{userId}: a new status on any of them
// updates its row in place (with a toast); an order the list does not know yet (just created)
// reloads the list. What the test checks is recorded on window.__ordersEvents.
(function () {
  'use strict';
  const cfg = JSON.parse(document.getElementById('config').textContent);
  const events = (window.__ordersEvents = { received: [], reloads: 0 });
  const $ = (id) => document.getElementById(id);
  const { rub, date, toast } = window.Shop;

  function setStatus(li, s) {
    li.dataset.status = s.status;
    li.querySelector('.status-icon').textContent = s.status_icon;
    li.querySelector('.status-text').textContent = s.status_text;
    const badge = li.querySelector('.badge');
    const custom = s.custom_status || { title: s.title, color: s.color };
    badge.textContent = custom.title;
    badge.style.background = custom.color;
  }

  function row(o) {
    const li = document.createElement('li');
    li.dataset.orderId = String(o.id);
    li.innerHTML = `<a class="order-link">
        <span class="status-icon"></span>
        <span class="main"><span class="head"><b class="number"></b> <span class="when muted"></span></span>
          <span class="status-text"></span> <span class="badge"></span>
          <span class="items muted"></span></span>
        <span class="price"></span></a>`;
    li.querySelector('a').href = `/orders/${o.id}`;
    li.querySelector('.number').textContent = `Заказ ${o.public_id}`;
    li.querySelector('.when').textContent = `от ${date(o.created_at)}`;
    li.querySelector('.items').textContent = o.items.map((i) => `${i.title} × ${i.quantity}`).join(', ');
    li.querySelector('.price').textContent = rub(o.total_minor);
    setStatus(li, o);
    return li;
  }

  async function load() {
    const resp = await fetch('/api/orders', { credentials: 'same-origin' });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const { orders } = await resp.json();
    const ul = $('my-orders');
    ul.innerHTML = '';
    for (const o of orders) ul.appendChild(row(o));
    $('empty').hidden = orders.length > 0;
    events.reloads += 1;
  }

  function onStatus(data) {
    events.received.push(data);
    const li = document.querySelector(`#my-orders li[data-order-id="${Number(data.order_id)}"]`);
    if (!li) {
      load().catch((e) => console.error('orders reload failed', e));
      return;
    }
    setStatus(li, data);
    li.classList.remove('changed');
    void li.offsetWidth; // restart the highlight
    li.classList.add('changed');
    toast(`${li.querySelector('.number').textContent}: ${data.status_icon} ${data.status_text}`);
  }

  async function start() {
    await load();
    const options = {
      cluster: cfg.cluster,
      forceTLS: cfg.forceTLS,
      enabledTransports: ['ws', 'wss'],
      channelAuthorization: { endpoint: '/pusher/auth', transport: 'ajax' },
    };
    if (cfg.wsHost) Object.assign(options, { wsHost: cfg.wsHost, wsPort: cfg.wsPort, wssPort: cfg.wsPort });
    const pusher = new Pusher(cfg.key, options);
    window.__pusher = pusher;
    pusher.connection.bind('state_change', ({ current }) => {
      $('live').textContent = current === 'connected' ? '● онлайн' : `● ${current}`;
      $('live').className = `live ${current}`;
    });
    const channel = pusher.subscribe(`private-user-${cfg.userId}`);
    channel.bind('pusher:subscription_succeeded', () => {
      document.body.dataset.live = 'subscribed';
    });
    channel.bind('pusher:subscription_error', (e) => {
      document.body.dataset.live = 'refused';
      console.error('subscription refused', e && e.status);
    });
    channel.bind('order:status', onStatus);
  }

  start().catch((e) => {
    $('empty').hidden = false;
    $('empty').textContent = `Не удалось загрузить заказы: ${e.message}`;
  });
})();
