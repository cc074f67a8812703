-- A warehouse: suppliers ship items to stores; stores stock them.
CREATE TABLE suppliers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    rating INTEGER NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    supplier_id INTEGER NOT NULL REFERENCES suppliers (id),
    category TEXT NOT NULL,
    cost NUMERIC(10, 2) NOT NULL
);
CREATE TABLE stores (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    opened_date DATE NOT NULL
);
CREATE TABLE shipments (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items (id),
    store_id INTEGER NOT NULL REFERENCES stores (id),
    shipped_date DATE NOT NULL,
    units INTEGER NOT NULL,
    status TEXT NOT NULL
);
