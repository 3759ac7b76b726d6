"""The OpenAI-compatible server backend (`openai:URL#MODEL`), over plain HTTP.

`backend` is the Backend itself; `http` is the client (retries, cancellation, errors
named for the user); `protocol` builds requests and reads responses and stream events;
`ref` parses the model reference and the chat envelope sent to the server.
"""
