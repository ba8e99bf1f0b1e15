-- Example queries for a table of game events, as dashboards (Metabase, Cube.js, Grafana) or psql
-- would run them. The table, as declared in a configuration:
--
--   tables:
--     events:
--       columns:
--         - {name: at, type: timestamptz, required: true}   # when it happened, as the game says
--         - {name: app, type: string, source: app_id, required: true}
--         - {name: kind, type: string, source: event_type, required: true}
--         - {name: player, type: string, required: true}
--
-- with an app whose event types session_start, level_up and purchase all go to it
-- (event_types: [{event_type_id: session_start, table: events}, ...]).
-- Days and weeks follow the session's time zone (SET TIME ZONE 'UTC' for UTC days).
-- tests/test_example_queries.py runs every query below on known events.

-- name: events per day
-- Events per day and event type.
SELECT date_trunc('day', at) AS day, kind, count(*) AS events
FROM events
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: daily active players
-- Players seen each day, per app.
SELECT date_trunc('day', at) AS day, app, count(DISTINCT player) AS players
FROM events
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: funnel
-- Of the players who started a session, how many levelled up within 7 days of their first
-- session, and how many of those bought something after levelling up.
WITH started AS (
    SELECT player, min(at) AS at FROM events WHERE kind = 'session_start' GROUP BY player
), levelled AS (
    SELECT s.player, min(e.at) AS at
    FROM started s
    JOIN events e ON e.player = s.player AND e.kind = 'level_up'
                 AND e.at >= s.at AND e.at < s.at + interval '7 days'
    GROUP BY s.player
), bought AS (
    SELECT DISTINCT l.player
    FROM levelled l
    JOIN events e ON e.player = l.player AND e.kind = 'purchase' AND e.at >= l.at
)
SELECT (SELECT count(*) FROM started) AS started,
       (SELECT count(*) FROM levelled) AS levelled_up,
       (SELECT count(*) FROM bought) AS bought;

-- name: retention by cohort
-- Players by the week they were first seen (their cohort), and how many of them were active
-- again each week after, as a share of the cohort.
WITH first_seen AS (
    SELECT player, date_trunc('week', min(at)) AS cohort FROM events GROUP BY player
), active AS (
    SELECT DISTINCT player, date_trunc('week', at) AS week FROM events
), cohort_size AS (
    SELECT cohort, count(*) AS players FROM first_seen GROUP BY cohort
)
SELECT f.cohort,
       (a.week::date - f.cohort::date) / 7 AS weeks_later,
       count(*) AS active,
       round(100.0 * count(*) / max(c.players), 1) AS percent
FROM first_seen f
JOIN active a USING (player)
JOIN cohort_size c USING (cohort)
GROUP BY 1, 2
ORDER BY 1, 2;
