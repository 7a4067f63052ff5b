-- The shop's tables. Money is integer minor units (kopecks); times are Unix seconds.
-- Statuses are two-level, as inSales keeps them: fulfillment_status is the system status,
-- custom_status_permalink the custom status that extends it.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('customer', 'manager', 'courier'))
);

CREATE TABLE sessions (
    token TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
    image_url TEXT NOT NULL
);

CREATE TABLE custom_statuses (
    id INTEGER PRIMARY KEY,
    permalink TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    system_status TEXT NOT NULL CHECK (system_status IN
        ('new', 'accepted', 'approved', 'dispatched', 'delivered', 'returned', 'declined')),
    color TEXT NOT NULL CHECK (color IN
        ('#D0CA02', '#E2AC54', '#DF8956', '#DC5F59', '#85C5E0', '#3A9FC9', '#B384E2', '#D361B8',
         '#8EA3E2', '#A69196', '#929594', '#686A69', '#7ABF24', '#86AA60', '#509897', '#249641')),
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_default_per_system_status ON custom_statuses(system_status) WHERE is_default = 1;

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users(id),
    courier_id INTEGER REFERENCES users(id),
    fulfillment_status TEXT NOT NULL,
    custom_status_permalink TEXT NOT NULL REFERENCES custom_statuses(permalink) ON UPDATE CASCADE,
    financial_status TEXT NOT NULL DEFAULT 'pending' CHECK (financial_status IN ('pending', 'paid')),
    payment_comment TEXT NOT NULL DEFAULT '',
    delivery_price_minor INTEGER NOT NULL DEFAULT 0,
    discount_minor INTEGER NOT NULL DEFAULT 0,
    method_type TEXT NOT NULL DEFAULT 'shipping' CHECK (method_type IN ('shipping', 'pickup')),
    street_address TEXT NOT NULL DEFAULT '',
    address_locality TEXT NOT NULL DEFAULT '',
    postal_code TEXT NOT NULL DEFAULT '',
    address_country TEXT NOT NULL DEFAULT 'RU',
    buyer_name TEXT NOT NULL DEFAULT '',
    buyer_phone TEXT NOT NULL DEFAULT '',
    buyer_email TEXT NOT NULL DEFAULT '',
    tracking_number TEXT,
    carrier TEXT,
    rating INTEGER CHECK (rating BETWEEN 1 AND 5),
    rating_comment TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX orders_by_user ON orders(user_id, created_at);

CREATE TABLE order_lines (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    title TEXT NOT NULL,
    image_url TEXT NOT NULL,
    unit_price_minor INTEGER NOT NULL,
    quantity_original INTEGER NOT NULL CHECK (quantity_original > 0),
    quantity_total INTEGER NOT NULL CHECK (quantity_total >= 0),
    quantity_fulfilled INTEGER NOT NULL DEFAULT 0 CHECK (quantity_fulfilled >= 0),
    discount_minor INTEGER NOT NULL DEFAULT 0
);

-- A superset of the cookbook's order_history(order_id, status, comment, created_at).
CREATE TABLE order_history (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    status TEXT NOT NULL,
    fulfillment_status TEXT NOT NULL,
    custom_status_permalink TEXT NOT NULL,
    comment TEXT,
    actor TEXT NOT NULL CHECK (actor IN ('manager', 'courier', 'api', 'mobile_app', 'system')),
    created_at INTEGER NOT NULL
);

-- UCP's append-only logs.
CREATE TABLE fulfillment_events (
    id TEXT PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    tracking_number TEXT,
    tracking_url TEXT,
    carrier TEXT,
    description TEXT NOT NULL
);
CREATE TABLE adjustments (
    id TEXT PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    occurred_at INTEGER NOT NULL,
    description TEXT NOT NULL,
    amount_minor INTEGER NOT NULL
);

CREATE TABLE courier_positions (
    order_id INTEGER PRIMARY KEY REFERENCES orders(id),
    courier_id INTEGER NOT NULL REFERENCES users(id),
    lat REAL NOT NULL,
    lng REAL NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE partners (
    partner_id TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    api_key TEXT NOT NULL,
    ucp_version TEXT NOT NULL DEFAULT '2026-01-23',
    -- 0 once removed from the settings: no new rows, and its pending rows wait until it returns.
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);

-- One row per partner per change, written in the change's transaction; `body` is frozen at commit.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    partner_id TEXT NOT NULL REFERENCES partners(partner_id),
    order_id INTEGER NOT NULL REFERENCES orders(id),
    webhook_id TEXT NOT NULL,
    webhook_timestamp INTEGER NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    parked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox(delivered_at, parked, partner_id, order_id, id);

-- The demo partner receiver's store.
CREATE TABLE received_order_events (
    webhook_id TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    event_timestamp INTEGER NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (partner_id, webhook_id)
);
