-- change-column-type.toml, step "sync-trigger".
-- While both columns exist, every write of temp_mean_c also sets temp_mean_c_new,
-- so rows written during and after the backfill are never left behind.

CREATE FUNCTION weather_features_2024q3_temp_mean_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.temp_mean_c_new := NEW.temp_mean_c::numeric(5,2);
    RETURN NEW;
END
$$;

CREATE TRIGGER weather_features_2024q3_temp_mean_sync
    BEFORE INSERT OR UPDATE OF temp_mean_c ON weather_features_2024q3
    FOR EACH ROW EXECUTE FUNCTION weather_features_2024q3_temp_mean_sync();
