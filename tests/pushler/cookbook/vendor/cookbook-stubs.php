<?php

// The app functions the cookbook's PHP calls but does not define, for the tests:
// - getDbConnection(): PDO on the SQLite file in $COOKBOOK_DB, with the cookbook's tables created and
//   seeded on first use and NOW() defined (the cookbook's SQL is MySQL-flavoured);
// - getCurrentUserId() / getCurrentCourierId(): the logged-in user or courier, from the `user_id` /
//   `courier_id` cookies a test sets (a stand-in for the app's session), null when absent.
// Seeded orders: 12345 and 555 belong to user 67890 and courier 7.

function getDbConnection(): PDO
{
    static $pdo = null;
    if ($pdo !== null) {
        return $pdo;
    }
    $path = getenv('COOKBOOK_DB');
    if (!$path) {
        throw new RuntimeException('COOKBOOK_DB is not set');
    }
    $pdo = new PDO('sqlite:' . $path, null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $pdo->sqliteCreateFunction('NOW', fn () => date('Y-m-d H:i:s'), 0);
    $pdo->exec('CREATE TABLE IF NOT EXISTS orders (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, courier_id INTEGER,
        status TEXT NOT NULL, updated_at TEXT)');
    $pdo->exec('CREATE TABLE IF NOT EXISTS order_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, status TEXT NOT NULL,
        comment TEXT, created_at TEXT)');
    $pdo->exec("INSERT OR IGNORE INTO orders (id, user_id, courier_id, status) VALUES
        (12345, 67890, 7, 'pending'), (555, 67890, 7, 'pending')");
    return $pdo;
}

function getCurrentUserId(): ?int
{
    return isset($_COOKIE['user_id']) ? (int) $_COOKIE['user_id'] : null;
}

function getCurrentCourierId(): ?int
{
    return isset($_COOKIE['courier_id']) ? (int) $_COOKIE['courier_id'] : null;
}
