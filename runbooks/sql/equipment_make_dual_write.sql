-- rename-column-expand-contract.toml, step "dual-write-trigger".
-- While both equipment.make (old name) and equipment.manufacturer (new name)
-- exist, keep them equal whichever one a writer sets:
--   INSERT: fill the one the writer left NULL from the other.
--   UPDATE: a non-NULL manufacturer written by the new code wins; otherwise a
--           change to make (old code) is copied to manufacturer.
-- Setting manufacturer back to NULL does not touch make: that keeps the
-- backfill's rollback (manufacturer = NULL) from erasing make.

CREATE FUNCTION equipment_make_dual_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.manufacturer := coalesce(NEW.manufacturer, NEW.make);
        NEW.make := coalesce(NEW.make, NEW.manufacturer);
    ELSIF NEW.manufacturer IS DISTINCT FROM OLD.manufacturer AND NEW.manufacturer IS NOT NULL THEN
        NEW.make := NEW.manufacturer;
    ELSIF NEW.make IS DISTINCT FROM OLD.make THEN
        NEW.manufacturer := NEW.make;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER equipment_make_dual_write
    BEFORE INSERT OR UPDATE ON equipment
    FOR EACH ROW EXECUTE FUNCTION equipment_make_dual_write();
