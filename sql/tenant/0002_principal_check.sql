-- mtapi_principal(user, roles): the authorisation check every tenant request runs first, in the
-- same pipeline as the tenant binding and the handler's first statement.
--
-- It raises (and so makes PostgreSQL skip the rest of the pipeline, the handler's statements
-- included) when the token's subject is not a current user of this tenant (SQLSTATE MT401) or
-- the user's current role is not one of `roles` (MT403). The role comes from the table, not from
-- the token: a demoted or deleted user loses access with their next request.
--
-- SECURITY INVOKER and no search_path of its own: it runs as the tenant role with the tenant's
-- search_path, so `users` is this tenant's table and nothing else is reachable.
CREATE FUNCTION mtapi_principal(p_user uuid, p_roles text[]) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $fn$
DECLARE
    current_role_name text;
BEGIN
    SELECT u.role INTO current_role_name FROM users AS u WHERE u.id = p_user;
    IF current_role_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MT401', MESSAGE = 'token subject is not a user of this tenant';
    END IF;
    IF NOT (current_role_name = ANY (p_roles)) THEN
        RAISE EXCEPTION USING ERRCODE = 'MT403', MESSAGE = 'role not allowed';
    END IF;
    RETURN current_role_name;
END
$fn$;
