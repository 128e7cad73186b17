-- pgbench script: the tenant transaction of GET /api/v1/vehicles/{id}, statement for statement as
-- mtapi sends it (src/tenancy/tenant_tx.cpp, src/api/v1/resource.cpp and vehicles.cpp): BEGIN, the
-- tenant binding, the principal check, the handler's statement and COMMIT in one pipeline with
-- one Sync. bench/fleet.sh runs it with -M prepared (named statements, as mtapi's statement
-- cache) and passes the variables with -D; it turns the :vehicle_id line into a random choice
-- among several ids (see bench/README.md, "Fleet API benchmark").
--
-- Variables: schema ("tenant_<hex>, pg_temp"), role ("tenant_<hex>"), user_id (a user of the
-- tenant), roles ("{admin,dispatcher,viewer}", the route's readers), vehicle_id.
--
-- The to_char format is written U&'...\003A...' (\003A is ':') because pgbench would take the
-- ":MI" of a plain literal for a variable; the parser turns both into the same constant.
\startpipeline
BEGIN;
SELECT set_config('search_path', :schema, true), set_config('role', :role, true);
SELECT mtapi_principal(:user_id::uuid, :roles::text[]);
SELECT json_build_object('id', id, 'plate', plate, 'vin', vin, 'make', make, 'model', model, 'year', year, 'status', status, 'odometer_km', odometer_km, 'created_at', to_char(created_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'), 'updated_at', to_char(updated_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'))::text FROM vehicles WHERE id = :vehicle_id::uuid;
COMMIT;
\endpipeline
