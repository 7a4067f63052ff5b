// What every page of the shop shares: money in roubles, dates in Russian, and the toast stack.
// Loaded before each page's own script, it defines window.Shop and nothing else.
(function () {
  'use strict';
  const MAX_TOASTS = 3;

  window.Shop = {
    // Whole roubles without kopecks ("1 480 ₽"), otherwise with them ("12,50 ₽").
    rub(minor) {
      return (minor / 100).toLocaleString('ru-RU', {
        style: 'currency',
        currency: 'RUB',
        minimumFractionDigits: minor % 100 ? 2 : 0,
        maximumFractionDigits: 2,
      });
    },
    // "4 декабря, 20:15" (month 'long') or "4 дек., 20:15" (month 'short').
    date(iso, month = 'long') {
      return new Date(iso).toLocaleString('ru-RU', { day: 'numeric', month, hour: '2-digit', minute: '2-digit' });
    },
    // Shows `text` in the page's #toasts for five seconds. A burst of changes shows its latest
    // few, not a column over the page.
    toast(text) {
      const box = document.getElementById('toasts');
      const div = document.createElement('div');
      div.className = 'toast';
      div.textContent = text;
      while (box.children.length >= MAX_TOASTS) box.firstElementChild.remove();
      box.appendChild(div);
      setTimeout(() => div.remove(), 5000);
    },
  };
})();
