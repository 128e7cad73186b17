-- Fleet tables of one tenant (SPEC §3).
--
-- Runs as the tenant's role with search_path set to the tenant's schema, so every object below is
-- created in that schema and owned by that role. This file names no schema: the same text serves
-- every tenant.
--
-- Constraint names are part of the API: a unique or check violation is mapped back to the field
-- it concerns by constraint name (409/422). Convention: <table>_<column>_key|check|fkey.
--
-- Every list is keyset-paginated newest first by (created_at, id); each filter a list supports
-- (status, and vehicle/driver for trips) has an index that leads with it and then follows that
-- order, so a page is one index range scan.

CREATE TABLE users (
    id uuid NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_check CHECK (char_length(email) BETWEEN 1 AND 254),
    CONSTRAINT users_role_check CHECK (role IN ('admin', 'dispatcher', 'viewer'))
);
-- One user per address whatever its capitalisation (login looks users up by lower(email)).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_created_at_id_idx ON users (created_at DESC, id DESC);

CREATE TABLE vehicles (
    id uuid NOT NULL,
    plate text NOT NULL,
    vin text NULL,
    make text NULL,
    model text NULL,
    year integer NULL,
    status text NOT NULL DEFAULT 'active',
    odometer_km bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vehicles_pkey PRIMARY KEY (id),
    CONSTRAINT vehicles_plate_key UNIQUE (plate),
    CONSTRAINT vehicles_plate_check CHECK (char_length(plate) BETWEEN 1 AND 20),
    CONSTRAINT vehicles_vin_check CHECK (char_length(vin) = 17),
    CONSTRAINT vehicles_year_check CHECK (year BETWEEN 1886 AND 2100),
    CONSTRAINT vehicles_status_check CHECK (status IN ('active', 'maintenance', 'retired')),
    CONSTRAINT vehicles_odometer_km_check CHECK (odometer_km >= 0)
);
CREATE INDEX vehicles_created_at_id_idx ON vehicles (created_at DESC, id DESC);
CREATE INDEX vehicles_status_created_at_id_idx ON vehicles (status, created_at DESC, id DESC);

CREATE TABLE drivers (
    id uuid NOT NULL,
    name text NOT NULL,
    license_number text NOT NULL,
    phone text NULL,
    email text NULL,
    status text NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT drivers_pkey PRIMARY KEY (id),
    CONSTRAINT drivers_license_number_key UNIQUE (license_number),
    CONSTRAINT drivers_status_check CHECK (status IN ('active', 'inactive'))
);
CREATE INDEX drivers_created_at_id_idx ON drivers (created_at DESC, id DESC);
CREATE INDEX drivers_status_created_at_id_idx ON drivers (status, created_at DESC, id DESC);

-- A vehicle or driver that trips still reference cannot be deleted (RESTRICT → 409). The
-- vehicle_id and driver_id indexes serve both the filtered lists and those RESTRICT checks.
CREATE TABLE trips (
    id uuid NOT NULL,
    vehicle_id uuid NOT NULL,
    driver_id uuid NOT NULL,
    origin text NOT NULL,
    destination text NOT NULL,
    status text NOT NULL DEFAULT 'planned',
    scheduled_at timestamptz NULL,
    started_at timestamptz NULL,
    completed_at timestamptz NULL,
    distance_km numeric(10, 2) NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trips_pkey PRIMARY KEY (id),
    CONSTRAINT trips_vehicle_id_fkey FOREIGN KEY (vehicle_id) REFERENCES vehicles (id) ON DELETE RESTRICT,
    CONSTRAINT trips_driver_id_fkey FOREIGN KEY (driver_id) REFERENCES drivers (id) ON DELETE RESTRICT,
    CONSTRAINT trips_status_check CHECK (status IN ('planned', 'in_progress', 'completed', 'cancelled')),
    CONSTRAINT trips_distance_km_check CHECK (distance_km >= 0)
);
CREATE INDEX trips_created_at_id_idx ON trips (created_at DESC, id DESC);
CREATE INDEX trips_status_created_at_id_idx ON trips (status, created_at DESC, id DESC);
CREATE INDEX trips_vehicle_id_created_at_id_idx ON trips (vehicle_id, created_at DESC, id DESC);
CREATE INDEX trips_driver_id_created_at_id_idx ON trips (driver_id, created_at DESC, id DESC);
