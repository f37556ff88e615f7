-- The session's outcome_evaluations, a projection of its user.define_outcome and
-- span.outcome_evaluation_* events kept in the same transaction as they are appended.
ALTER TABLE sessions ADD COLUMN outcomes TEXT NOT NULL DEFAULT '[]';
