-- A tool call is answered once: a second result or confirmation for the same call is refused
-- by the database itself, so a client retrying a POST whose response it lost cannot log it twice.
CREATE UNIQUE INDEX events_one_custom_tool_result
    ON events (session_id, json_extract(body, '$.custom_tool_use_id'))
    WHERE type = 'user.custom_tool_result';
CREATE UNIQUE INDEX events_one_tool_confirmation
    ON events (session_id, json_extract(body, '$.tool_use_id'))
    WHERE type = 'user.tool_confirmation';
