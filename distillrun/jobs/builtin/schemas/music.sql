-- A music store: artists release albums of tracks that listeners buy.
CREATE TABLE artists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    genre TEXT NOT NULL
);
CREATE TABLE albums (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    artist_id INTEGER NOT NULL REFERENCES artists (id),
    release_date DATE NOT NULL,
    price NUMERIC(6, 2) NOT NULL
);
CREATE TABLE listeners (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    email TEXT NOT NULL,
    country TEXT NOT NULL,
    plan TEXT NOT NULL,
    signup_date DATE NOT NULL
);
CREATE TABLE purchases (
    id INTEGER PRIMARY KEY,
    album_id INTEGER NOT NULL REFERENCES albums (id),
    listener_id INTEGER NOT NULL REFERENCES listeners (id),
    purchase_date DATE NOT NULL,
    quantity INTEGER NOT NULL,
    rating INTEGER
);
