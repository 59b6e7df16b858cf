-- split-station-metadata.toml, step "backfill-stations".
-- One row per station, taken from its most recent feature row across the four
-- quarters (the precheck "metadata-consistent" proved all rows agree).
-- ON CONFLICT DO NOTHING makes the step safe to run again, e.g. to pick up a
-- station that appeared after the first run.

INSERT INTO stations (station_id, name, state, latitude, longitude, elevation_m, first_seen, last_seen)
SELECT DISTINCT ON (f.station_id)
       f.station_id, f.station_name, f.station_state, f.station_lat, f.station_lon,
       f.station_elevation_m,
       min(f.observed_on) OVER (PARTITION BY f.station_id),
       max(f.observed_on) OVER (PARTITION BY f.station_id)
  FROM (
        SELECT station_id, station_name, station_state, station_lat, station_lon,
               station_elevation_m, observed_on FROM weather_features_2024q1
        UNION ALL
        SELECT station_id, station_name, station_state, station_lat, station_lon,
               station_elevation_m, observed_on FROM weather_features_2024q2
        UNION ALL
        SELECT station_id, station_name, station_state, station_lat, station_lon,
               station_elevation_m, observed_on FROM weather_features_2024q3
        UNION ALL
        SELECT station_id, station_name, station_state, station_lat, station_lon,
               station_elevation_m, observed_on FROM weather_features_2024q4
       ) AS f
 ORDER BY f.station_id, f.observed_on DESC
ON CONFLICT (station_id) DO NOTHING;
