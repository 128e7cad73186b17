-- pgbench script: the tenant transaction of POST /api/v1/vehicles with every field, statement for
-- statement as mtapi sends it (src/tenancy/tenant_tx.cpp, src/api/v1/resource.cpp and
-- vehicles.cpp), in one pipeline with one Sync, with two differences pgbench imposes: the id is
-- gen_random_uuid() instead of a UUIDv7 parameter made by the client (pgbench has no string
-- functions), and the plate is a number unique per run, client and transaction. See
-- vehicle_get.sql for how bench/fleet.sh runs it and why the to_char format is a U& literal.
--
-- Variables: schema, role, user_id, roles ("{admin,dispatcher}", the route's writers), run (a
-- number unique per pgbench run), n (0: the client's transaction counter), vin, make, model,
-- year, status, odometer_km.
\set n :n + 1
\set plate :run * 10000000000 + :client_id * 100000000 + :n
\startpipeline
BEGIN;
SELECT set_config('search_path', :schema, true), set_config('role', :role, true);
SELECT mtapi_principal(:user_id::uuid, :roles::text[]);
INSERT INTO vehicles (id, plate, vin, make, model, year, status, odometer_km) VALUES (gen_random_uuid(), :plate, :vin, :make, :model, :year::int, :status, :odometer_km::bigint) RETURNING json_build_object('id', id, 'plate', plate, 'vin', vin, 'make', make, 'model', model, 'year', year, 'status', status, 'odometer_km', odometer_km, 'created_at', to_char(created_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'), 'updated_at', to_char(updated_at AT TIME ZONE 'UTC', U&'YYYY-MM-DD"T"HH24\003AMI\003ASS.US"Z"'))::text;
COMMIT;
\endpipeline
