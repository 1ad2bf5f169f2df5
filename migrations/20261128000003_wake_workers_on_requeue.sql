-- apalis-postgres wakes idle workers (LISTEN/NOTIFY) only when a job is inserted. A job
-- that goes back to Pending — handed back by a worker shutting down, or re-enqueued
-- after its worker died — would wait for some worker's next poll. This trigger sends
-- the same notification on that transition, so another worker takes it at once.
-- Runs after apalis-postgres's own migrations (see store::database::migrate).
DROP TRIGGER IF EXISTS price_history_notify_requeued ON apalis.jobs;
CREATE TRIGGER price_history_notify_requeued
    AFTER UPDATE OF status ON apalis.jobs
    FOR EACH ROW
    WHEN (NEW.status = 'Pending' AND OLD.status IS DISTINCT FROM 'Pending')
    EXECUTE FUNCTION apalis.notify_new_jobs();
