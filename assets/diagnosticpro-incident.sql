-- diagnosticpro-incident: the bad change that runbooks/emergency-manual-rollback.toml undoes.
--
-- Load after assets/diagnosticpro.sql, into the same "diagnosticpro" database:
--   psql -d diagnosticpro -v ON_ERROR_STOP=1 -f assets/diagnosticpro-incident.sql
--
-- The story: change CHG-2240 "Retire stale equipment" was applied by hand,
-- outside pgpilot, late in the evening. Its author did take a backup of the
-- columns it rewrote, but:
--   * the heartbeat job that updates equipment.last_seen_at had been broken
--     for weeks, so the "not seen for 90 days" rule retired a large part of
--     the fleet that is in fact alive;
--   * it added a column, retired_reason, that the inventory service's strict
--     row mapping does not know, so every equipment page now fails;
--   * it added a UNIQUE index on serial_number "for faster lookups", which
--     breaks the re-registration of refurbished units (they reuse serials).
-- Afterwards, one unit (id 13) was re-activated by hand on purpose; the
-- emergency rollback must not undo that.
--
-- Everything below is exactly what was run, in order.

-- 1. Backup of the columns about to be rewritten.
CREATE TABLE equipment_backup_chg2240 AS
SELECT id, status, updated_at FROM equipment;

-- 2. The new column and the bulk update.
ALTER TABLE equipment ADD COLUMN retired_reason text;

UPDATE equipment
   SET status = 'retired',
       retired_reason = 'not seen for 90 days',
       updated_at = timestamptz '2025-06-01 22:10+00'
 WHERE last_seen_at < timestamptz '2025-06-01 00:00+00' - interval '90 days'
   AND status <> 'retired';

-- 3. The unique index.
CREATE UNIQUE INDEX equipment_serial_number_key ON equipment (serial_number);

-- 4. After the change: a legitimate manual fix that must survive the rollback.
UPDATE equipment
   SET status = 'active', updated_at = timestamptz '2025-06-02 07:45+00'
 WHERE id = 13;
