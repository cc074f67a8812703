-- An airline: passengers book seats on flights between airports.
CREATE TABLE airports (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE TABLE flights (
    id INTEGER PRIMARY KEY,
    airport_id INTEGER NOT NULL REFERENCES airports (id),
    departure_date DATE NOT NULL,
    status TEXT NOT NULL,
    distance INTEGER NOT NULL
);
CREATE TABLE passengers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    nationality TEXT NOT NULL,
    age INTEGER NOT NULL
);
CREATE TABLE bookings (
    id INTEGER PRIMARY KEY,
    flight_id INTEGER NOT NULL REFERENCES flights (id),
    passenger_id INTEGER NOT NULL REFERENCES passengers (id),
    booking_date DATE NOT NULL,
    class TEXT NOT NULL,
    price NUMERIC(8, 2) NOT NULL
);
