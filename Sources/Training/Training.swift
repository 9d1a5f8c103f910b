import GraphIR
import Runtime
