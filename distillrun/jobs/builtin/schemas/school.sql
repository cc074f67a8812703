-- A school: students enrol in courses taught by teachers and receive grades.
CREATE TABLE teachers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT NOT NULL,
    salary NUMERIC(10, 2) NOT NULL
);
CREATE TABLE courses (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    teacher_id INTEGER NOT NULL REFERENCES teachers (id),
    level TEXT NOT NULL,
    credits INTEGER NOT NULL
);
CREATE TABLE students (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    country TEXT NOT NULL,
    age INTEGER NOT NULL,
    enrolled_date DATE NOT NULL
);
CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students (id),
    course_id INTEGER NOT NULL REFERENCES courses (id),
    enrollment_date DATE NOT NULL,
    score INTEGER
);
