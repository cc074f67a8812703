-- A company: employees work in departments and log hours on projects.
CREATE TABLE departments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    budget NUMERIC(12, 2) NOT NULL
);
CREATE TABLE employees (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    department_id INTEGER NOT NULL REFERENCES departments (id),
    salary NUMERIC(10, 2) NOT NULL,
    hire_date DATE NOT NULL,
    level TEXT NOT NULL
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    department_id INTEGER NOT NULL REFERENCES departments (id),
    status TEXT NOT NULL,
    start_date DATE NOT NULL
);
CREATE TABLE timesheets (
    id INTEGER PRIMARY KEY,
    employee_id INTEGER NOT NULL REFERENCES employees (id),
    project_id INTEGER NOT NULL REFERENCES projects (id),
    work_date DATE NOT NULL,
    hours INTEGER NOT NULL
);
