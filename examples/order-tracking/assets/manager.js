// The manager page: lists orders (optionally filtered by status), changes a status with a comment
// and assigns a courier, all through the shop's JSON API.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  let statuses = [];

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

  async function load() {
    const filter = $('filter').value;
    const data = await api(`/api/manager/orders${filter ? `?status=${encodeURIComponent(filter)}` : ''}`);
    if (!statuses.length) {
      statuses = data.statuses;
      for (const s of statuses) $('filter').appendChild(option(s.permalink, `${s.icon} ${s.title}`));
    }
    const rows = $('rows');
    rows.innerHTML = '';
    for (const o of data.orders) {
      const tr = document.createElement('tr');
      tr.dataset.orderId = String(o.id);
      tr.innerHTML = `<td class="id"></td><td class="buyer"></td><td><span class="badge"></span></td>
        <td><select class="courier"></select></td>
        <td><select class="status"></select> <input class="comment" placeholder="комментарий"></td>
        <td><button class="apply">Изменить</button></td>`;
      tr.querySelector('.id').textContent = o.public_id;
      tr.querySelector('.buyer').textContent = o.buyer_name;
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
      const sel = tr.querySelector('.status');
      for (const s of statuses) sel.appendChild(option(s.permalink, `${s.icon} ${s.title}`, s.permalink === o.status));
      const cour = tr.querySelector('.courier');
      cour.appendChild(option('', '—', o.courier_id == null));
      for (const c of data.couriers) cour.appendChild(option(String(c.id), c.name, c.id === o.courier_id));
      cour.addEventListener('change', () =>
        act(() => api(`/api/manager/orders/${o.id}/courier`, { courier_id: cour.value ? Number(cour.value) : null })),
      );
      tr.querySelector('.apply').addEventListener('click', () =>
        act(() => api(`/api/manager/orders/${o.id}/status`, { status: sel.value, comment: tr.querySelector('.comment').value })),
      );
      rows.appendChild(tr);
    }
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

  $('filter').addEventListener('change', () => load().catch((e) => ($('message').textContent = e.message)));
  load().catch((e) => ($('message').textContent = e.message));
})();
