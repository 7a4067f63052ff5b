-- Demo data: three customers, a manager, two couriers, products, and orders with line items.
-- The cookbook's seven statuses are the seeded custom statuses; `returned` is left for the first
-- GET of admin/custom_statuses.json to create, as inSales does.

INSERT INTO users (id, name, email, phone, role) VALUES
    (1, 'Алиса Петрова', 'alice@example.com', '+79990000001', 'customer'),
    (2, 'Борис Иванов', 'bob@example.com', '+79990000002', 'customer'),
    (3, 'Вера Смирнова', 'vera@example.com', '+79990000003', 'customer'),
    (10, 'Мария (менеджер)', 'manager@example.com', '+79990000010', 'manager'),
    (20, 'Иван Курьеров', 'courier@example.com', '+79990000020', 'courier'),
    (21, 'Пётр Доставкин', 'courier2@example.com', '+79990000021', 'courier');

INSERT INTO products (id, title, price_minor, image_url) VALUES
    (1, 'Пицца Маргарита', 59000, '/static/img/pizza.svg'),
    (2, 'Салат Цезарь', 39000, '/static/img/salad.svg'),
    (3, 'Лимонад', 15000, '/static/img/drink.svg'),
    (4, 'Тирамису', 29000, '/static/img/cake.svg');

INSERT INTO custom_statuses (permalink, title, system_status, color, is_default, position, created_at, updated_at) VALUES
    ('pending', 'Pending', 'new', '#E2AC54', 1, 1, 1767225600, 1767225600),
    ('confirmed', 'Confirmed', 'accepted', '#3A9FC9', 1, 2, 1767225600, 1767225600),
    ('preparing', 'Preparing', 'approved', '#B384E2', 1, 3, 1767225600, 1767225600),
    ('ready', 'Ready', 'approved', '#85C5E0', 0, 4, 1767225600, 1767225600),
    ('shipped', 'Shipped', 'dispatched', '#DF8956', 1, 5, 1767225600, 1767225600),
    ('delivered', 'Delivered', 'delivered', '#249641', 1, 6, 1767225600, 1767225600),
    ('cancelled', 'Cancelled', 'declined', '#DC5F59', 1, 7, 1767225600, 1767225600);

INSERT INTO orders (id, public_id, user_id, courier_id, fulfillment_status, custom_status_permalink,
                    financial_status, payment_comment, delivery_price_minor, discount_minor,
                    street_address, address_locality, postal_code, buyer_name, buyer_phone, buyer_email,
                    created_at, updated_at) VALUES
    (1001, 'M-1001', 1, 20, 'new', 'pending', 'paid', 'Оплачено картой', 19000, 5000,
     'ул. Тверская, 7', 'Москва', '125009', 'Алиса Петрова', '+79990000001', 'alice@example.com', 1767229200, 1767229200),
    (1002, 'M-1002', 2, 20, 'new', 'pending', 'pending', 'Оплата при получении', 19000, 0,
     'Невский пр., 28', 'Санкт-Петербург', '191186', 'Борис Иванов', '+79990000002', 'bob@example.com', 1767232800, 1767232800),
    (1003, 'M-1003', 1, NULL, 'new', 'pending', 'pending', 'Оплата при получении', 0, 0,
     'ул. Тверская, 7', 'Москва', '125009', 'Алиса Петрова', '+79990000001', 'alice@example.com', 1767236400, 1767236400),
    (1004, 'M-1004', 3, 21, 'new', 'pending', 'paid', 'Оплачено картой', 19000, 0,
     'ул. Ленина, 1', 'Казань', '420111', 'Вера Смирнова', '+79990000003', 'vera@example.com', 1767240000, 1767240000);

INSERT INTO order_lines (order_id, product_id, title, image_url, unit_price_minor, quantity_original, quantity_total, discount_minor) VALUES
    (1001, 1, 'Пицца Маргарита', '/static/img/pizza.svg', 59000, 2, 2, 5000),
    (1001, 3, 'Лимонад', '/static/img/drink.svg', 15000, 2, 2, 0),
    (1002, 2, 'Салат Цезарь', '/static/img/salad.svg', 39000, 1, 1, 0),
    (1002, 4, 'Тирамису', '/static/img/cake.svg', 29000, 1, 1, 0),
    (1003, 4, 'Тирамису', '/static/img/cake.svg', 29000, 3, 3, 0),
    (1004, 1, 'Пицца Маргарита', '/static/img/pizza.svg', 59000, 1, 1, 0);

INSERT INTO order_history (order_id, status, fulfillment_status, custom_status_permalink, comment, actor, created_at) VALUES
    (1001, 'pending', 'new', 'pending', 'Заказ оформлен', 'system', 1767229200),
    (1002, 'pending', 'new', 'pending', 'Заказ оформлен', 'system', 1767232800),
    (1003, 'pending', 'new', 'pending', 'Заказ оформлен', 'system', 1767236400),
    (1004, 'pending', 'new', 'pending', 'Заказ оформлен', 'system', 1767240000);
