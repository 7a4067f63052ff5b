-- The destination's coordinates, so the order page's map is centred on where the order goes.
-- Nullable for orders created without them; the seeded orders get their addresses' points.
ALTER TABLE orders ADD COLUMN destination_lat REAL CHECK (destination_lat BETWEEN -90 AND 90);
ALTER TABLE orders ADD COLUMN destination_lng REAL CHECK (destination_lng BETWEEN -180 AND 180);

UPDATE orders SET destination_lat = 55.7596, destination_lng = 37.6100 WHERE street_address = 'ул. Тверская, 7' AND address_locality = 'Москва';
UPDATE orders SET destination_lat = 59.9357, destination_lng = 30.3280 WHERE street_address = 'Невский пр., 28' AND address_locality = 'Санкт-Петербург';
UPDATE orders SET destination_lat = 55.7963, destination_lng = 49.1088 WHERE street_address = 'ул. Ленина, 1' AND address_locality = 'Казань';
