wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/chime/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab9081bfd2d117d4c0f114efc9a2657531cfad7e5aea93934c7d0770f894f8d6"
wrk.headers["X-Amz-Date"] = "20261128T170428Z"
