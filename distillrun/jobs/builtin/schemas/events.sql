-- Ticketing: venues host events; attendees buy tickets.
CREATE TABLE venues (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    capacity INTEGER NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    venue_id INTEGER NOT NULL REFERENCES venues (id),
    kind TEXT NOT NULL,
    event_date DATE NOT NULL
);
CREATE TABLE attendees (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    country TEXT NOT NULL,
    birth_date DATE NOT NULL
);
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events (id),
    attendee_id INTEGER NOT NULL REFERENCES attendees (id),
    purchase_date DATE NOT NULL,
    tier TEXT NOT NULL,
    price NUMERIC(8, 2) NOT NULL
);
