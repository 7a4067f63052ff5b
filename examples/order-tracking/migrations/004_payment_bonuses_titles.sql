-- Issue 19: what the mobile order history's `retryPaymentMethod` and `usedBonuses` are made of,
-- and Russian titles for the seeded custom statuses.
--
-- `payment_method` is how the order is paid: `card_online` (paid on the site; an unpaid one can be
-- paid again) or `cash_on_delivery`. `used_bonuses_minor` is the loyalty bonuses spent on the order,
-- in kopecks (one bonus is one rouble), taken off the total like a discount.
ALTER TABLE orders ADD COLUMN payment_method TEXT NOT NULL DEFAULT 'cash_on_delivery'
    CHECK (payment_method IN ('card_online', 'cash_on_delivery'));
ALTER TABLE orders ADD COLUMN used_bonuses_minor INTEGER NOT NULL DEFAULT 0 CHECK (used_bonuses_minor >= 0);

UPDATE orders SET payment_method = 'card_online' WHERE payment_comment = 'Оплачено картой';
-- Alice's second order: paid online, not paid yet (the card was declined), with bonuses spent.
UPDATE orders SET payment_method = 'card_online', payment_comment = 'Оплата картой онлайн не прошла',
    used_bonuses_minor = 3000
    WHERE id = 1003 AND financial_status = 'pending';

-- The shop speaks Russian: the seeded statuses get the customer's words. Only titles nobody has
-- edited yet are replaced; they stay editable through admin/custom_statuses.
UPDATE custom_statuses SET title = 'Ожидает подтверждения' WHERE permalink = 'pending' AND title = 'Pending';
UPDATE custom_statuses SET title = 'Подтверждён' WHERE permalink = 'confirmed' AND title = 'Confirmed';
UPDATE custom_statuses SET title = 'Готовится' WHERE permalink = 'preparing' AND title = 'Preparing';
UPDATE custom_statuses SET title = 'Готов к выдаче' WHERE permalink = 'ready' AND title = 'Ready';
UPDATE custom_statuses SET title = 'В доставке' WHERE permalink = 'shipped' AND title = 'Shipped';
UPDATE custom_statuses SET title = 'Доставлен' WHERE permalink = 'delivered' AND title = 'Delivered';
UPDATE custom_statuses SET title = 'Отменён' WHERE permalink = 'cancelled' AND title = 'Cancelled';
