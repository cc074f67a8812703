-- A clinic: patients see doctors at appointments and pay invoices.
CREATE TABLE doctors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    specialty_type TEXT NOT NULL,
    city TEXT NOT NULL
);
CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    gender TEXT NOT NULL,
    age INTEGER NOT NULL,
    registered_date DATE NOT NULL
);
CREATE TABLE appointments (
    id INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    doctor_id INTEGER NOT NULL REFERENCES doctors (id),
    appointment_date DATE NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments (id),
    amount NUMERIC(8, 2) NOT NULL,
    currency TEXT NOT NULL,
    issued_date DATE NOT NULL
);
