import NestEngine
