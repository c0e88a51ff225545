package flows
import ("testing";"os";"wiremortem/flows/capture")
func BenchmarkBig(b *testing.B){
 p:=os.Getenv("BIG"); if p=="" {b.Skip()}
 for i:=0;i<b.N;i++{ r,_:=capture.Open(p); tr:=NewTracker(Options{OnDone: func(*Conversation, Sink){}}); tr.Run(r); r.Close() }
}
