//! Every number the shop enforces or waits on, with its source. No runtime state here.

use std::time::Duration;

/// Orders per page of the mobile order history (order-specs §5.5: the shop picks the size).
pub const HISTORY_PAGE_SIZE: usize = 10;

/// Most orders one `admin/orders.json` page returns (inSales: `per_page` at most 250).
pub const MAX_ADMIN_PER_PAGE: usize = 250;

/// Default page size of `admin/orders.json` (inSales's default).
pub const DEFAULT_ADMIN_PER_PAGE: usize = 25;

/// Largest request body any endpoint reads. The biggest legitimate one, an order with lines, is
/// a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a session cookie lives (a demo shop: one working day).
pub const SESSION_MAX_AGE_SECS: i64 = 12 * 3600;

/// The outbox worker's first retry delay; doubled per failed attempt (Google's order-lifecycle
/// guide: "retry with exponential backoff").
pub const OUTBOX_BASE_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts (order-specs §6.2: capped at 5 minutes).
pub const OUTBOX_MAX_DELAY: Duration = Duration::from_secs(300);

/// Default of how long the outbox retries a row before parking it as failed, in seconds
/// (order-specs §6.2: "give up after 24 hours"). A setting: `SHOP_OUTBOX_GIVE_UP_SECS`.
pub const OUTBOX_GIVE_UP_SECS: u64 = 24 * 3600;

/// How often the worker looks for due rows when nothing woke it. A commit wakes it at once.
pub const OUTBOX_POLL: Duration = Duration::from_millis(500);

/// Deadline of one partner delivery, connect included (Google asks partners to answer quickly).
pub const OUTBOX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows sent per worker pass.
pub const OUTBOX_BATCH: usize = 20;

/// Number of custom statuses one system status may have (inSales sets no number; this keeps the
/// table and the manager's select usable).
pub const MAX_CUSTOM_STATUSES: i64 = 200;

/// Longest custom status title.
pub const MAX_TITLE_LEN: usize = 100;

/// Longest status comment.
pub const MAX_COMMENT_LEN: usize = 500;

/// Highest delivery price an order may be created with, in roubles: a sanity bound that keeps the
/// kopeck amount far inside `i64`.
pub const MAX_DELIVERY_PRICE: f64 = 1_000_000.0;

/// Random bytes in a session token (128 bits or more, OWASP session management cheat sheet).
pub const SESSION_TOKEN_BYTES: usize = 32;

/// How much of a partner's error answer the outbox keeps in `last_error`.
pub const OUTBOX_ERROR_CHARS: usize = 200;
