-- Platform catalog: tenants, platform administrators, change notification, hardening.
--
-- Runs as the login role (owner of the database and of schema platform) inside the migration
-- runner's transaction, after the runner has created schema platform and
-- platform.schema_migrations. Every name is schema-qualified, so search_path does not matter.

-- Nobody but the login role (the owner) may look up or create anything in platform: a tenant
-- role running `SELECT * FROM platform.tenants` gets permission denied, not data.
REVOKE ALL ON SCHEMA platform FROM PUBLIC;

CREATE TABLE platform.tenants (
    id uuid NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    plan text NOT NULL DEFAULT 'standard',
    status text NOT NULL DEFAULT 'active',
    -- tenant_<32 lowercase hex of id> (SPEC §1): derived from the id, never from input.
    schema_name text NOT NULL,
    role_name text NOT NULL,
    schema_version integer NOT NULL DEFAULT 0,
    -- Per-tenant token bucket override; NULL/NULL means the plan's default.
    rate_limit_capacity integer NULL,
    rate_limit_refill_per_sec double precision NULL,
    -- The PostgreSQL cluster holding the tenant's schema (SPEC §7).
    placement text NOT NULL DEFAULT 'default',
    -- Set by `mtapi migrate` when this tenant's schema failed to migrate; cleared on success.
    migration_error text NULL,
    migration_failed_at timestamptz NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_pkey PRIMARY KEY (id),
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT tenants_slug_check CHECK (slug ~ '^[a-z][a-z0-9-]{2,39}$'),
    CONSTRAINT tenants_name_check CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT tenants_plan_check CHECK (plan IN ('free', 'standard', 'enterprise')),
    CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended')),
    CONSTRAINT tenants_schema_name_key UNIQUE (schema_name),
    CONSTRAINT tenants_role_name_key UNIQUE (role_name),
    CONSTRAINT tenants_schema_name_check CHECK (schema_name = 'tenant_' || replace(id::text, '-', '')),
    CONSTRAINT tenants_role_name_check CHECK (role_name = schema_name),
    CONSTRAINT tenants_schema_version_check CHECK (schema_version >= 0),
    CONSTRAINT tenants_rate_limit_capacity_check CHECK (rate_limit_capacity > 0),
    CONSTRAINT tenants_rate_limit_refill_per_sec_check CHECK (rate_limit_refill_per_sec >= 0),
    CONSTRAINT tenants_rate_limit_check CHECK ((rate_limit_capacity IS NULL) = (rate_limit_refill_per_sec IS NULL)),
    CONSTRAINT tenants_placement_check CHECK (char_length(placement) BETWEEN 1 AND 63)
);

-- Keyset pagination of the admin tenant list: newest first by (created_at, id).
CREATE INDEX tenants_created_at_id_idx ON platform.tenants (created_at DESC, id DESC);

CREATE TABLE platform.platform_admins (
    id uuid NOT NULL,
    email text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT platform_admins_pkey PRIMARY KEY (id),
    CONSTRAINT platform_admins_email_check CHECK (char_length(email) BETWEEN 3 AND 254)
);

-- Emails compare case-insensitively: one admin per address whatever its spelling.
CREATE UNIQUE INDEX platform_admins_email_key ON platform.platform_admins (lower(email));

-- Trigger functions pin search_path to pg_catalog so that nothing a session puts earlier on its
-- search_path can replace now() or pg_notify() inside them (CVE-2018-1058 class). They run as the
-- invoker: only the login role writes these tables.
CREATE FUNCTION platform.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog
AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$fn$;

-- Every instance LISTENs on mtapi_tenants and reloads the tenant named by the payload, so a
-- status change reaches all of them within a second. Notifications are sent at commit.
CREATE FUNCTION platform.notify_tenant_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog
AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('mtapi_tenants', OLD.id::text);
    ELSE
        PERFORM pg_notify('mtapi_tenants', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$fn$;

CREATE TRIGGER tenants_touch_updated_at BEFORE UPDATE ON platform.tenants
    FOR EACH ROW EXECUTE FUNCTION platform.touch_updated_at();
CREATE TRIGGER tenants_notify_change AFTER INSERT OR UPDATE OR DELETE ON platform.tenants
    FOR EACH ROW EXECUTE FUNCTION platform.notify_tenant_change();
CREATE TRIGGER platform_admins_touch_updated_at BEFORE UPDATE ON platform.platform_admins
    FOR EACH ROW EXECUTE FUNCTION platform.touch_updated_at();

-- Functions are executable by PUBLIC by default. Nothing in platform is meant to be called by a
-- tenant role, so take that away for the functions above and for every function the login role
-- creates from now on (global default: per-schema defaults can only add privileges).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA platform FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- No temporary objects for PUBLIC (and so for no tenant role). pg_temp is searched before
-- anything else for relations: a temporary table named like a tenant table would shadow it for
-- the next request that runs on the same pooled connection as another tenant. The login role
-- keeps TEMP as the database owner.
DO $do$
BEGIN
    EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
END;
$do$;

-- Nobody but the owner may create objects in schema public: an object planted there (a function
-- named like a built-in with a better-matching signature, a table or an operator) would be
-- picked up by any session whose search_path includes public (CVE-2018-1058). PostgreSQL 15
-- already creates databases this way; older clusters and restored dumps may not. In PostgreSQL
-- 15 public belongs to pg_database_owner, whose privileges the NOINHERIT login role holds only
-- after SET ROLE, so the revoke runs as the schema's owner when the login role is a member of it.
-- If PUBLIC still has CREATE afterwards (public owned by someone else), stop: the database is not
-- safe to serve tenants from until its owner runs the REVOKE.
DO $do$
DECLARE
    owner_name text;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(nspowner) INTO owner_name
      FROM pg_catalog.pg_namespace WHERE nspname = 'public';
    IF owner_name IS NULL THEN
        RETURN;
    END IF;
    IF owner_name <> current_user AND pg_catalog.pg_has_role(owner_name, 'MEMBER') THEN
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', owner_name);
    END IF;
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    RESET ROLE;
    IF pg_catalog.has_schema_privilege('public', 'public', 'CREATE') THEN
        RAISE EXCEPTION 'PUBLIC may create objects in schema public and the login role cannot revoke it'
            USING HINT = pg_catalog.format('As %I, run: REVOKE CREATE ON SCHEMA public FROM PUBLIC', owner_name);
    END IF;
END;
$do$;
