-- What a log's model calls cost at list prices, picodollars (10^-12 USD): exact, so that many
-- small calls add up without rounding; the API shows it rounded to the cent. A session's
-- counts its threads', as its usage does.
ALTER TABLE sessions ADD COLUMN list_cost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE threads ADD COLUMN list_cost BIGINT NOT NULL DEFAULT 0;
