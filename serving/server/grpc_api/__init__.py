"""The gRPC front: TF Serving's PredictionService and ModelService (services.py).

Named grpc_api, not grpc, so that it never shadows the grpc package.
"""
