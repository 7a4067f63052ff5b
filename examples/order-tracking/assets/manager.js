// The manager page: lists orders (optionally filtered by status) with their totals and dates,
// changes a status with a comment and assigns a courier, all through the shop's JSON API. It is
// live: pusher-js subscribes private-managers (the shop authorises managers only), and every
// `order:updated` there (a change by another manager, the admin API, the mobile app, a customer
// coming online) reloads the list, keeping what the manager is typing. What the test checks is
// recorded on window.__managerEvents.
(function () {
  'use strict';
  const cfg = JSON.parse(document.getElementById('config').textContent);
  const events = (window.__managerEvents = { received: [], loads: 0 });
  const $ = (id) => document.getElementById(id);
  let statuses = [];

  const { rub } = window.Shop;
  const date = (iso) => window.Shop.date(iso, 'short');

  async function api(path, body) {
    const r = await fetch(path, {
      method: body ? 'POST' : 'GET',
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'same-origin',
    });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(json.error || json.message || `HTTP ${r.status}`);
    return json;
  }

  function option(value, text, selected) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    o.selected = !!selected;
    return o;
  }

  // What the manager has typed or picked but not applied yet, by order, so a live reload keeps it.
  function drafts() {
    const out = new Map();
    for (const tr of document.querySelectorAll('#rows tr')) {
      const comment = tr.querySelector('.comment').value;
      const status = tr.querySelector('select.status').value;
      if (comment || status !== tr.dataset.status) out.set(tr.dataset.orderId, { comment, status });
    }
    return out;
  }

  async function load() {
    const filter = $('filter').value;
    const data = await api(`/api/manager/orders${filter ? `?status=${encodeURIComponent(filter)}` : ''}`);
    statuses = data.statuses;
    const chosen = $('filter').value;
    $('filter').replaceChildren(option('', 'все'));
    for (const s of statuses) $('filter').appendChild(option(s.permalink, `${s.icon} ${s.title}`, s.permalink === chosen));
    const kept = drafts();
    const rows = $('rows');
    rows.innerHTML = '';
    for (const o of data.orders) {
      const tr = document.createElement('tr');
      tr.dataset.orderId = String(o.id);
      tr.dataset.status = o.status;
      tr.innerHTML = `<td class="id"></td><td class="created"></td><td class="buyer"></td><td class="num total"></td>
        <td><span class="badge"></span><div class="updated muted"></div></td>
        <td><select class="courier"></select></td>
        <td><select class="status"></select> <input class="comment" placeholder="комментарий"></td>
        <td><button class="apply">Изменить</button></td>`;
      tr.querySelector('.id').textContent = o.public_id;
      tr.querySelector('.created').textContent = date(o.created_at);
      tr.querySelector('.buyer').textContent = o.buyer_name;
      tr.querySelector('.total').textContent = rub(o.total_minor);
      if (o.financial_status === 'paid') tr.querySelector('.total').title = 'оплачен';
      tr.querySelector('.updated').textContent = `изм. ${date(o.updated_at)}`;
      if (o.online) {
        const dot = document.createElement('span');
        dot.className = 'online';
        dot.title = 'страница заказа открыта';
        dot.textContent = ' ● онлайн';
        tr.querySelector('.buyer').appendChild(dot);
      }
      const badge = tr.querySelector('.badge');
      badge.textContent = `${o.status_icon} ${o.title}`;
      badge.style.background = o.color;
      const draft = kept.get(tr.dataset.orderId);
      const sel = tr.querySelector('.status');
      const picked = draft ? draft.status : o.status;
      for (const s of statuses) sel.appendChild(option(s.permalink, `${s.icon} ${s.title}`, s.permalink === picked));
      if (draft) tr.querySelector('.comment').value = draft.comment;
      const cour = tr.querySelector('.courier');
      cour.appendChild(option('', '—', o.courier_id == null));
      for (const c of data.couriers) cour.appendChild(option(String(c.id), c.name, c.id === o.courier_id));
      cour.addEventListener('change', () =>
        act(() => api(`/api/manager/orders/${o.id}/courier`, { courier_id: cour.value ? Number(cour.value) : null })),
      );
      tr.querySelector('.apply').addEventListener('click', () =>
        act(async () => {
          await api(`/api/manager/orders/${o.id}/status`, { status: sel.value, comment: tr.querySelector('.comment').value });
          tr.querySelector('.comment').value = '';
          tr.dataset.status = sel.value;
        }),
      );
      rows.appendChild(tr);
    }
    events.loads += 1;
  }

  async function act(call) {
    try {
      await call();
      $('message').textContent = 'Сохранено';
    } catch (e) {
      $('message').textContent = `Ошибка: ${e.message}`;
    }
    await load();
  }

  // Several changes in a burst (a status change announces itself too) reload the list once.
  let reloadTimer = null;
  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load().catch((e) => ($('message').textContent = e.message)), 100);
  }

  function live() {
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
    const channel = pusher.subscribe('private-managers');
    channel.bind('pusher:subscription_succeeded', () => {
      document.body.dataset.live = 'subscribed';
      reloadSoon(); // whatever changed while connecting
    });
    channel.bind('pusher:subscription_error', (e) => {
      document.body.dataset.live = 'refused';
      console.error('subscription refused', e && e.status);
    });
    channel.bind('order:updated', (data) => {
      events.received.push(data);
      reloadSoon();
    });
  }

  $('filter').addEventListener('change', () => load().catch((e) => ($('message').textContent = e.message)));
  load().catch((e) => ($('message').textContent = e.message));
  live();
})();
