"""The agent room: a LangChain agent whose LLM is the lorastack endpoint."""
