"""The REST front: TF Serving's HTTP/REST API, byte for byte.

  http_app        the ASGI app (served by uvicorn): body limit, threads, timeout,
                  metrics page, libevent's error pages
  handler         the routes and handlers (HttpRestApiHandler::ProcessRequest)
  json_requests   :predict / :classify / :regress bodies -> tensors and tf.Example protos
  json_values     JSON documents and values -> numpy, with RapidJSON's rules
  json_reader     the JSON that orjson refuses, parsed as RapidJSON parses it
  json_responses  tensors and results -> response bodies
  json_writer     RapidJSON PrettyWriter's layout and TF Serving's number formatting
  proto_json      model status and metadata as TF Serving's proto JSON printer writes them
"""
