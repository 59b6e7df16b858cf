-- split-station-metadata.toml, step "create-stations".
-- The station master table. One row per station_id; the quarterly feature
-- tables will reference it (foreign keys added NOT VALID, validated later).

CREATE TABLE stations (
    station_id   varchar(10)  PRIMARY KEY,
    name         text         NOT NULL,
    state        text         NOT NULL,
    latitude     numeric(8,5) NOT NULL,
    longitude    numeric(8,5) NOT NULL,
    elevation_m  integer,
    first_seen   date,
    last_seen    date,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    updated_at   timestamptz  NOT NULL DEFAULT now()
);

COMMENT ON TABLE stations IS 'Weather station master data, split out of weather_features_* (CHG-2070)';
