// The customer's order page: the initial state from /api/orders/{id}, then live updates from
// pusher-js on private-user-{userId}. Events for other orders on the same channel are ignored by
// order_id (the cookbook's "common mistakes"). Everything the test checks is also recorded on
// window.__orderEvents. Browser notifications are asked for on a click (the "enable
// notifications" button), as browsers require.
(function () {
  'use strict';
  const cfg = JSON.parse(document.getElementById('config').textContent);
  const events = (window.__orderEvents = { received: [], ignored: [], toasts: 0, notifications: 0 });
  const $ = (id) => document.getElementById(id);
  const { rub } = window.Shop;
  let timeline = [];
  let currentStatus = null;

  // Only the destination is a real place to measure the courier against; without it the map
  // centres on the courier and no distance is shown.
  const destination = cfg.mapCenter ? { ...cfg.mapCenter } : null;

  function renderTimeline(step) {
    const ol = $('timeline');
    ol.innerHTML = '';
    for (const t of timeline) {
      const li = document.createElement('li');
      const state = step < 0 ? 'pending' : t.step < step ? 'done' : t.step === step ? 'active' : 'pending';
      li.className = `step ${state}`;
      li.dataset.step = String(t.step);
      li.dataset.state = state;
      // Done: a tick. Now: the step's icon. Not reached: its number on a grey dot, as the
      // cookbook's Vue timeline draws it, so a step ahead never reads as done.
      const mark = state === 'done' ? '✓' : state === 'active' ? t.icon : String(t.step + 1);
      li.innerHTML = `<span class="dot"></span><span class="label"></span>`;
      li.querySelector('.dot').textContent = mark;
      li.querySelector('.label').textContent = t.label;
      ol.appendChild(li);
    }
    ol.classList.toggle('stopped', step < 0);
  }

  function renderStatus(s) {
    currentStatus = s;
    $('status-icon').textContent = s.status_icon;
    $('status-text').textContent = s.status_text;
    document.body.dataset.status = s.status;
    const badge = $('custom-status');
    if (s.custom_status) {
      badge.textContent = s.custom_status.title;
      badge.style.background = s.custom_status.color;
      badge.dataset.color = s.custom_status.color;
    }
    $('status-comment').textContent = s.comment || '';
    renderTimeline(s.step);
    $('map-card').hidden = s.status !== 'shipped' && s.fulfillment_status !== 'dispatched';
  }

  function addHistory(h) {
    const li = document.createElement('li');
    li.innerHTML = '<span class="when"></span> <span class="what"></span> <span class="note"></span>';
    li.querySelector('.when').textContent = new Date(h.created_at || h.updated_at).toLocaleString('ru-RU');
    li.querySelector('.what').textContent = `${h.status_icon} ${h.status_text}`;
    li.querySelector('.note').textContent = h.comment || '';
    $('history').prepend(li);
  }

  // Map: the city block 0.02° around the order's destination (the house in the middle); no tile
  // server. An order without known coordinates centres on the courier's first position.
  const MAP = { w: 400, h: 240, span: 0.02 };
  // What a shopper wants from the courier's position: how far and how long. The time assumes a
  // city courier's average speed with stops and lights (20 km/h); closer than DOOR_M is "at the door".
  const COURIER_SPEED_KMH = 20;
  const DOOR_M = 50;
  const EARTH_RADIUS_M = 6371000;

  function distanceM(a, b) {
    const rad = (d) => (d * Math.PI) / 180;
    const dLat = rad(b.lat - a.lat);
    const dLng = rad(b.lng - a.lng);
    const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLng / 2) ** 2;
    return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(h));
  }

  function courierDistanceText(lat, lng) {
    if (!destination) return '';
    const m = distanceM({ lat, lng }, destination);
    if (m < DOOR_M) return 'Курьер у двери';
    const minutes = Math.max(1, Math.round(m / 1000 / COURIER_SPEED_KMH * 60));
    const away = m < 1000 ? `${Math.round(m / 10) * 10} м` : `${(m / 1000).toLocaleString('ru-RU', { maximumFractionDigits: 1 })} км`;
    return `Курьер в ${minutes} мин · ${away} от вас`;
  }
  function moveCourier(lat, lng) {
    if (!cfg.mapCenter) cfg.mapCenter = { lat, lng };
    const c = cfg.mapCenter;
    const x = Math.max(12, Math.min(MAP.w - 12, MAP.w / 2 + ((lng - c.lng) / MAP.span) * (MAP.w / 2)));
    const y = Math.max(12, Math.min(MAP.h - 12, MAP.h / 2 - ((lat - c.lat) / MAP.span) * (MAP.h / 2)));
    const m = $('courier-marker');
    m.setAttribute('transform', `translate(${x.toFixed(1)} ${y.toFixed(1)})`);
    m.dataset.lat = String(lat);
    m.dataset.lng = String(lng);
    $('courier-distance').textContent = courierDistanceText(lat, lng);
  }

  function toast(text) {
    events.toasts += 1;
    window.Shop.toast(text);
  }

  // Browsers only ask for notification permission on a user gesture: a button, shown while the
  // choice is still open. Once granted, status changes also raise a browser notification.
  function offerNotifications() {
    const button = $('enable-notifications');
    if (!('Notification' in window) || Notification.permission !== 'default') {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    button.onclick = async () => {
      events.permissionRequests = (events.permissionRequests || 0) + 1;
      try {
        await Notification.requestPermission();
      } catch (e) {
        console.warn('notification permission request failed', e);
      }
      offerNotifications();
    };
  }

  function notify(title, body) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      new Notification(title, { body, tag: `order-${cfg.orderId}` });
      events.notifications += 1;
    } catch (e) {
      console.warn('notification failed', e);
    }
  }

  function onStatus(data) {
    if (Number(data.order_id) !== cfg.orderId) {
      events.ignored.push(data);
      return;
    }
    events.received.push({ event: 'order:status', data });
    renderStatus(data);
    addHistory(data);
    const text = `${data.status_icon} ${data.status_text}`;
    toast(`Заказ ${cfg.publicId}: ${text}${data.comment ? ` — ${data.comment}` : ''}`);
    notify(`Заказ ${cfg.publicId}`, text);
  }

  function onLocation(data) {
    if (Number(data.order_id) !== cfg.orderId) {
      events.ignored.push(data);
      return;
    }
    events.received.push({ event: 'order:courier-location', data });
    moveCourier(data.lat, data.lng);
  }

  async function start() {
    const resp = await fetch(`/api/orders/${cfg.orderId}`, { credentials: 'same-origin' });
    if (!resp.ok) {
      $('status-text').textContent = `Заказ недоступен (${resp.status})`;
      return;
    }
    const state = await resp.json();
    offerNotifications();
    timeline = state.timeline;
    renderStatus(state.status);
    state.history.forEach(addHistory);
    $('lines').innerHTML = '';
    for (const l of state.lines) {
      const li = document.createElement('li');
      li.innerHTML = '<img alt=""><span class="t"></span><span class="q"></span><span class="sum"></span>';
      li.querySelector('img').src = l.image_url;
      li.querySelector('.t').textContent = l.title;
      li.querySelector('.q').textContent = `${l.quantity_total} × ${rub(l.unit_price_minor)}`;
      li.querySelector('.sum').textContent = rub(l.quantity_total * l.unit_price_minor);
      if (l.quantity_total === 0) li.classList.add('removed');
      $('lines').appendChild(li);
    }
    // The total broken down: lines − discounts − bonuses + delivery = total.
    const b = state.breakdown;
    $('items-sum').textContent = rub(b.items_minor);
    $('discount').textContent = `−${rub(b.discount_minor)}`;
    $('bonuses').textContent = `−${rub(b.used_bonuses_minor)}`;
    $('delivery').textContent = b.delivery_price_minor ? rub(b.delivery_price_minor) : 'бесплатно';
    $('total').textContent = rub(b.total_minor);
    for (const [part, minor] of [['discount', b.discount_minor], ['bonuses', b.used_bonuses_minor]]) {
      document.querySelector(`#breakdown [data-part="${part}"]`).hidden = minor === 0;
    }
    if (state.courier_position) moveCourier(state.courier_position.lat, state.courier_position.lng);

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
    pusher.connection.bind('connected', () => {
      const channel = pusher.subscribe(`private-user-${cfg.userId}`);
      if (channel.__bound) return;
      channel.__bound = true;
      channel.bind('pusher:subscription_succeeded', () => {
        document.body.dataset.live = 'subscribed';
      });
      channel.bind('pusher:subscription_error', (e) => {
        document.body.dataset.live = 'refused';
        console.error('subscription refused', e && e.status);
      });
      channel.bind('order:status', onStatus);
      channel.bind('order:courier-location', onLocation);
    });
  }

  start();
})();
