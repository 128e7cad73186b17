-- pgbench script: the tenant transaction of GET /api/v1/vehicles?limit=20 (first page, no
-- filter), statement for statement as mtapi sends it (src/tenancy/tenant_tx.cpp,
-- src/api/v1/resource.cpp and vehicles.cpp), in one pipeline with one Sync. See vehicle_get.sql
-- for how bench/fleet.sh runs it and why the to_char format is a U& literal.
--
-- Variables: schema, role, user_id, roles ("{admin,dispatcher,viewer}"), limit (21: the page
-- size plus the one row that tells whether there is a next page).
\startpipeline
BEGIN;
SELECT set_config('search_path', :schema, true), set_config('role', :role, true);
SELECT mtapi_principal(:user_id::uuid, :roles::text[]);
SELECT json_build_object('id', id, 'plate', plate, 'vin', vin, 'make', make, 'model', model, 'year', year, 'status', status, 'odometer_km', odometer_km, 'created_at', to_char(created_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'), 'updated_at', to_char(updated_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'))::text, to_char(created_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'), id::text FROM vehicles WHERE true ORDER BY created_at DESC, id DESC LIMIT :limit::int;
COMMIT;
\endpipeline
