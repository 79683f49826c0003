"""The agent's prompts. Training data for tool use is rendered with the same system prompt."""

SYSTEM_PROMPT = (
    "You are a helpful assistant. Use the calculator tool for any arithmetic and the search tool for facts "
    "you do not know. When you have the result, answer briefly."
)

MALFORMED_TOOL_CALL = (
    "Your tool call could not be read. Write it exactly as\n"
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2 + 2"}}\n</tool_call>\n'
    "with valid JSON, or answer without a tool."
)
