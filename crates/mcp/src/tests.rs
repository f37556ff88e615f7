use super::model_tool_name;

#[test]
fn model_names_are_valid_tool_names() {
    assert_eq!(model_tool_name("crm", "lookup"), "mcp__crm__lookup");
    assert_eq!(model_tool_name("my server", "a.b"), "mcp__my_server__a_b");
    assert_eq!(model_tool_name("s", &"x".repeat(300)).len(), 128);
}
