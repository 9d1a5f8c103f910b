import XCTest
@testable import GraphIR
