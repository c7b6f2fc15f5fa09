import boto3, botocore.auth, botocore.awsrequest, botocore.credentials
c = boto3.client("chime-sdk-meetings", endpoint_url="http://127.0.0.1:8091", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret-example")
m = c.create_meeting(MediaRegion="us-east-1", ExternalMeetingId="prof")["Meeting"]
a = c.create_attendee(MeetingId=m["MeetingId"], ExternalUserId="José")["Attendee"]
url = f"http://127.0.0.1:8091/meetings/{m['MeetingId']}/attendees/{a['AttendeeId']}"
req = botocore.awsrequest.AWSRequest(method="GET", url=url)
botocore.auth.SigV4Auth(botocore.credentials.Credentials("AKIDEXAMPLE","secret-example"), "chime", "us-east-1").add_auth(req)
with open("get.lua","w") as f:
    f.write('wrk.headers["Authorization"] = "%s"\n' % req.headers["Authorization"])
    f.write('wrk.headers["X-Amz-Date"] = "%s"\n' % req.headers["X-Amz-Date"])
print(url)
