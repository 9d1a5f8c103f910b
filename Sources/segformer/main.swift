import GraphIR
import Runtime
print("segformer")
